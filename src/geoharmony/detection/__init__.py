"""Detection and instance segmentation downstream of a pretrained backbone: COCO-format data
(:mod:`.coco`, :mod:`.dataset`), a pasted-object set built from real images (:mod:`.pasted`),
Mask R-CNN over a checkpoint's ResNet (:mod:`.model`), its fine-tuning (:mod:`.config`,
:mod:`.train`), COCO AP (:mod:`.evaluate`) and the table of runs (:mod:`.report`)."""
