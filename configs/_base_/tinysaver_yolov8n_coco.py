# The TinySaver settings every COCO config of this folder shares: the paper's YOLOv8n saver and its
# operating point. mmengine cannot merge a `model` from two bases, so they are a plain variable that a
# config spreads into its own model next to its base detector:
#
#   _base_ = ['mmdet::rtmdet/rtmdet_l_8xb32-300e_coco.py', './_base_/tinysaver_yolov8n_coco.py']
#   model = dict(_delete_=True, base=_base_.model, **_base_.tinysaver)
#
# (`tinysaver` then stays in the loaded config as an unused top-level key.)
tinysaver = dict(
    type='TinySaverDetector',
    saver=dict(weights='yolov8n.pt', imgsz=640),
    threshold=0.25,
    min_score=0.05)
