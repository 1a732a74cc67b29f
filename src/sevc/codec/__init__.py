"""Coding whole videos: the frame schedule, the sequence codec, bitstream formats and the file codec."""
