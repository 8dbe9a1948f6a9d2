"""Every picture the project draws: `canvas` (how each is drawn and written), `evaluation` (mAP
against tIoU, AP per class, timelines), `analysis` (the paper's analyses), `points` (where the
points fall in their instances), `study` (a study's mAP curves over seeds).
"""
