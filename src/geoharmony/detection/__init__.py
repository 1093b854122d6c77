"""Detection and instance segmentation downstream of a pretrained backbone: COCO-format data
(:mod:`.coco`) and a pasted-object set built from real images (:mod:`.pasted`)."""
