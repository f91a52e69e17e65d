# TinySaver on COCO val2017 with the published Co-DINO Swin-L (O365 -> COCO) config itself as the base:
# the official model by construction, at the cost of needing an mmdetection checkout to load at all.
#
#   git clone -b v3.3.0 https://github.com/open-mmlab/mmdetection   # same version as the mmdet wheel
#   MMDET_CHECKOUT=$PWD/mmdetection PYTHONPATH=$PWD/mmdetection python tools/test_mmdet.py \
#       configs/tinysaver_yolov8n_codino-swin-l_official_coco.py --checkpoint co_dino_5scale_swin_large_16e_o365tococo-614254c9.pth
#
# mmengine substitutes $MMDET_CHECKOUT before it resolves _base_; without it, loading fails with
# "`MMDET_CHECKOUT` cannot be found in `os.environ`". PYTHONPATH makes `projects.CO-DETR.codetr`
# importable (or run from the checkout's root). tinysaver_yolov8n_codino-swin-l_coco.py is the same
# inference model written out, which loads without the checkout.
_base_ = [
    '{{$MMDET_CHECKOUT:}}/projects/CO-DETR/configs/codino/co_dino_5scale_swin_l_16xb1_16e_o365tococo.py',
    './_base_/tinysaver_yolov8n_coco.py',
]
custom_imports = dict(imports=['tinysaver_det.mmdet', 'projects.CO-DETR.codetr'], allow_failed_imports=False)

_base_.model.backbone.init_cfg = None  # inference only: no ImageNet-22k weights to download
model = dict(_delete_=True, base=_base_.model, **_base_.tinysaver)  # saver, threshold: see _base_/

test_evaluator = [_base_.test_evaluator, dict(type='TinySaverRouting')]
load_from = None  # the published config fine-tunes from the Objects365 checkpoint: never load it here
