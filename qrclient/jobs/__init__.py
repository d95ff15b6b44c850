"""Jobs: work made of many requests to a peer (retrieve, doctor, cohort retrieval)."""
