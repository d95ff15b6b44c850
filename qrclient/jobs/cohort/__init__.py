"""Cohort retrieval: a list of studies (find's output, or a CSV of accession numbers,
patient IDs, study UIDs), each row looked up by a STUDY-level C-FIND and retrieved, as a
durable job in the store (``store.jobs``) that resumes where it stopped.

``items`` reads the list; ``resolve`` finds each row's studies, split by date past the
PACS's result cap; ``pacing`` keeps to a time window and a rate; ``run`` drives the job;
``report`` writes one CSV row per input row.
"""
