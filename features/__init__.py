"""Video to features: decoding, optical flow, the I3D network and its weights, the HDF5 feature store."""
