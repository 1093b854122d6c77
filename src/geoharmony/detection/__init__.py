"""Detection and instance segmentation downstream of a pretrained backbone: COCO-format data
(:mod:`.coco`), a pasted-object set built from real images (:mod:`.pasted`) and Mask R-CNN over
a checkpoint's ResNet (:mod:`.model`)."""
