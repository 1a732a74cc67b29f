"""Neural-network building blocks shared by the codecs: convolutional blocks, resampling, padding."""
