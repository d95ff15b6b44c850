"""Presentation shared by the faces: what events, errors, matches and peer text look like.

``events`` turns association events into log lines, ``trace`` writes them as JSON lines,
``dicomjson`` writes matches as DICOM JSON, ``browse`` builds the rows and requests of
an interactive face, ``failures`` picks the one error a face reports, ``printable``
makes peer text safe for a terminal.
"""
