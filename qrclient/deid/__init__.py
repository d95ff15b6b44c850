"""Pseudonymisation on receive (``--pseudonymize``): PS3.15 Annex E's Basic Application
Level Confidentiality Profile, applied to every instance before it is written.

Design, module by module:

- ``engine``: the profile, by dicognito (a maintained library: every PN, UI, DA/DT,
  IDs, addresses, institution), plus what dicognito leaves of Table E.1-1
  (``profile``: free text, patient characteristics, device IDs, private attributes,
  overlays). UIDs, the patient's ID and name and accession numbers get pseudonyms
  from the store's key. Dates are shifted back per patient (Retain Longitudinal
  Temporal Information with Modified Dates) or kept (with Full Dates). Pixel data
  are never changed: burned-in annotation is out of scope.
- ``key``: one secret key per store, kept outside it; every pseudonym is a keyed hash
  of its original, so a patient, study or series gets the same pseudonym in every
  instance, in every run, and a rerun finds what it stored (resume) by computing the
  pseudonymous UIDs of the planned instances.
- ``linkage``: originals to pseudonyms, appended to a CSV file the user names
  (``--linkage``), never inside the store.
- ``marker``: a pseudonymised store says so, and plain and pseudonymised instances
  never share a store.
- ``sink``: the store wrapped as a retrieve's sink and index: decode at ``seal``,
  pseudonymise, encode, hand to the store. The plain receive path is untouched.
- ``session``: putting it together for a retrieve, every check first.

Only ``errors``, ``marker``, ``key`` and ``linkage`` are light: a plain retrieve
imports ``marker`` alone; pydicom and dicognito come with ``engine``, ``sink`` and
``session``, imported only with ``--pseudonymize``.
"""
