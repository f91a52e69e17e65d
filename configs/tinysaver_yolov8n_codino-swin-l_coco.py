# TinySaver on COCO val2017, the paper's pair: YOLOv8n saver (Ultralytics, 37.3 AP) ->
# Co-DINO 5-scale Swin-L base (Objects365 -> COCO, 16 epochs; mmdet model zoo, 64.1 AP).
#
# Co-DINO lives in mmdetection's projects/CO-DETR, which the mmdet wheel does not ship. To run:
#   git clone -b v3.3.0 https://github.com/open-mmlab/mmdetection   # same version as the wheel
#   PYTHONPATH=mmdetection python tools/test_mmdet.py configs/tinysaver_yolov8n_codino-swin-l_coco.py \
#       --checkpoint co_dino_5scale_swin_large_16e_o365tococo-614254c9.pth
# `projects.CO-DETR.codetr` is imported only when a `projects` package is importable, so this file
# also loads without the checkout (to read or edit it); building the model then fails on 'CoDETR'.
#
# The model is the published co_dino_5scale_swin_l_16xb1_16e_o365tococo.py, written out here because
# its _base_ chain lives in the checkout, restricted to inference: the query head that mmdet evaluates
# (eval_module='detr'), without training settings and without the auxiliary ATSS / Faster R-CNN heads
# that serve only training (`base_training_only` drops their weights when the official checkpoint
# loads). mmdet's own tools/test.py takes the official checkpoint as its positional argument:
#   PYTHONPATH=mmdetection python mmdetection/tools/test.py configs/tinysaver_yolov8n_codino-swin-l_coco.py \
#       co_dino_5scale_swin_large_16e_o365tococo-614254c9.pth
# tinysaver_yolov8n_codino-swin-l_official_coco.py inherits the published config itself instead.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py', './_base_/tinysaver_yolov8n_coco.py'
]

import importlib.util  # noqa: E402  (stdlib; a builtin import keeps this a plain text config)

custom_imports = dict(
    imports=['tinysaver_det.mmdet'] + (['projects.CO-DETR.codetr'] if importlib.util.find_spec('projects') else []),
    allow_failed_imports=False)

num_levels = 5
deformable_attention = dict(type='MultiScaleDeformableAttention', embed_dims=256, num_levels=num_levels, dropout=0.0)
co_dino_swin_l = dict(
    type='CoDETR',
    use_lsj=False,
    eval_module='detr',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=False,
        batch_augments=None),
    backbone=dict(
        type='SwinTransformer',
        pretrain_img_size=384,
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=12,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.3,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),
    neck=dict(
        type='ChannelMapper',
        in_channels=[192, 384, 768, 1536],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    query_head=dict(
        type='CoDINOHead',
        num_query=900,
        num_classes=80,
        in_channels=2048,
        as_two_stage=True,
        dn_cfg=dict(
            label_noise_scale=0.5,
            box_noise_scale=0.4,
            group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=500)),
        transformer=dict(
            type='CoDinoTransformer',
            with_coord_feat=False,
            num_co_heads=2,
            num_feature_levels=num_levels,
            encoder=dict(
                type='DetrTransformerEncoder',
                num_layers=6,
                with_cp=0,  # activation checkpointing saves training memory only
                transformerlayers=dict(
                    type='BaseTransformerLayer',
                    attn_cfgs=deformable_attention,
                    feedforward_channels=2048,
                    ffn_dropout=0.0,
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
            decoder=dict(
                type='DinoTransformerDecoder',
                num_layers=6,
                return_intermediate=True,
                transformerlayers=dict(
                    type='DetrTransformerDecoderLayer',
                    attn_cfgs=[
                        dict(type='MultiheadAttention', embed_dims=256, num_heads=8, dropout=0.0),
                        deformable_attention,
                    ],
                    feedforward_channels=2048,
                    ffn_dropout=0.0,
                    operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')))),
        positional_encoding=dict(type='SinePositionalEncoding', num_feats=128, temperature=20, normalize=True),
        # The classification loss sets the head's output layout (sigmoid: 80 channels).
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=None,
    test_cfg=[dict(max_per_img=300, nms=dict(type='soft_nms', iou_threshold=0.8))])

model = dict(
    base=co_dino_swin_l,
    base_training_only=('rpn_head.', 'roi_head.', 'bbox_head.'),  # Co-DINO's auxiliary heads
    **_base_.tinysaver)  # saver, threshold: see _base_/

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1280), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = [_base_.test_evaluator, dict(type='TinySaverRouting')]

# Inference only: mmengine's test loop, and no training or validation loop (the Runner refuses a
# train_dataloader without train_cfg and optim_wrapper, which mmdet's dataset file alone would leave).
test_cfg = dict(type='TestLoop')
train_dataloader = None
train_cfg = None
optim_wrapper = None
val_dataloader = None
val_cfg = None
val_evaluator = None
