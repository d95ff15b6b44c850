"""The command-line face: argument parsing and output; no DICOM logic of its own."""
