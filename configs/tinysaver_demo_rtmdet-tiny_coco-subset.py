# Try the plug-in on this machine: the shipped demo saver and a randomly initialised RTMDet-tiny on the
# real COCO val2017 subset (500 images) of the assets folder. A plumbing demo: the demo saver was trained
# on synthetic shapes and the base has no trained weights here, so the AP is meaningless; what it shows
# is the run itself (routing, exit ratio, GFLOPs, COCO evaluation, 1 or N processes).
#
#   python tools/test_mmdet.py configs/tinysaver_demo_rtmdet-tiny_coco-subset.py --work-dir runs/mmdet_subset
#   torchrun --standalone --nproc_per_node 2 tools/test_mmdet.py configs/tinysaver_demo_rtmdet-tiny_coco-subset.py \
#       --launcher pytorch --work-dir runs/mmdet_subset_2p
#
# Assets: $TINYSAVER_ASSETS when set, else ../../shared/assets from this file (the repository's default).
_base_ = './tinysaver_yolov8n_rtmdet-l_coco.py'

assets = '{{$TINYSAVER_ASSETS:{{ fileDirname }}/../../shared/assets}}'
data_root = assets + '/coco/'
ann_file = 'annotations/instances_val2017_subset.json'

model = dict(
    # RTMDet-tiny: the RTMDet-L config at mmdet's tiny depth and width, for a CPU.
    base=dict(
        backbone=dict(deepen_factor=0.167, widen_factor=0.375),
        neck=dict(in_channels=[96, 192, 384], out_channels=96, num_csp_blocks=1),
        bbox_head=dict(in_channels=96, feat_channels=96, exp_on_reg=False)),
    saver=dict(
        weights=assets + '/demo/weights/yolov8p_shapes.pt',
        imgsz=320,
        # The demo saver's 8 shape classes (circle, octagon, square, rectangle, triangle, arrowhead, star,
        # cross) are given 8 COCO names so that its labels exist in the dataset: plumbing only.
        class_names=['sports ball', 'stop sign', 'tv', 'book', 'kite', 'airplane', 'frisbee', 'person']),
    threshold=0.09)  # about the median confidence of the demo saver here: both branches run

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 320), keep_ratio=True),  # small, for CPU
    dict(type='Pad', size=(320, 320), pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file=ann_file, data_prefix=dict(img='val2017/'), pipeline=test_pipeline))
# COCO's standard max detections (1, 10, 100): all six numbers then match tinysaver_det's own evaluation
# (tools/eval_coco.py); the RTMDet config reports AP50..APl at 10 detections per image.
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + ann_file, metric='bbox', proposal_nums=(1, 10, 100)),
    dict(type='TinySaverRouting'),
]
