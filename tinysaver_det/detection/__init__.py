"""Detection plug-in: types, the cascade, COCO evaluation."""
