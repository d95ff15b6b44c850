"""qrclient: an asynchronous DICOM query/retrieve client."""

__version__ = "0.1.0"
