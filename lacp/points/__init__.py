"""Point labels: one labelled frame per training instance.

`instances` (training instances as parallel arrays), `sampling` (points drawn under a chosen
distribution), `clicks` (SF-Net human clicks onto instances), `formats` (the released LACP points
CSV, SF-Net click files, THUMOS'14 ground truth), `report` (relative positions and statistics).
"""
