"""Keywords, tags and VRs of the attributes queries, retrieves and the store use most.

Looking a keyword up in pydicom's data dictionary means importing pydicom, some 70 ms
before a command can start. The attributes of the query/retrieve information model
and of the store's index are listed here (tests/test_identifier.py checks every row
against pydicom's dictionary); anything else is looked up in pydicom, imported then.
"""

from __future__ import annotations

# The VRs with a 4-byte length in explicit VR (after 2 reserved bytes; PS3.5 7.1.2).
LONG_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"))

# keyword: (tag, VR); the VR is the dictionary's first where it gives several.
COMMON: dict[str, tuple[int, str]] = {
    "TransferSyntaxUID": (0x00020010, "UI"),
    "SpecificCharacterSet": (0x00080005, "CS"),
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "StudyDate": (0x00080020, "DA"),
    "SeriesDate": (0x00080021, "DA"),
    "AcquisitionDate": (0x00080022, "DA"),
    "ContentDate": (0x00080023, "DA"),
    "StudyTime": (0x00080030, "TM"),
    "SeriesTime": (0x00080031, "TM"),
    "ContentTime": (0x00080033, "TM"),
    "AccessionNumber": (0x00080050, "SH"),
    "QueryRetrieveLevel": (0x00080052, "CS"),
    "RetrieveAETitle": (0x00080054, "AE"),
    "InstanceAvailability": (0x00080056, "CS"),
    "FailedSOPInstanceUIDList": (0x00080058, "UI"),
    "Modality": (0x00080060, "CS"),
    "ModalitiesInStudy": (0x00080061, "CS"),
    "SOPClassesInStudy": (0x00080062, "UI"),
    "InstitutionName": (0x00080080, "LO"),
    "ReferringPhysicianName": (0x00080090, "PN"),
    "StudyDescription": (0x00081030, "LO"),
    "SeriesDescription": (0x0008103E, "LO"),
    "PatientName": (0x00100010, "PN"),
    "PatientID": (0x00100020, "LO"),
    "IssuerOfPatientID": (0x00100021, "LO"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientSex": (0x00100040, "CS"),
    "BodyPartExamined": (0x00180015, "CS"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "StudyID": (0x00200010, "SH"),
    "SeriesNumber": (0x00200011, "IS"),
    "InstanceNumber": (0x00200013, "IS"),
    "NumberOfPatientRelatedStudies": (0x00201200, "IS"),
    "NumberOfPatientRelatedSeries": (0x00201202, "IS"),
    "NumberOfPatientRelatedInstances": (0x00201204, "IS"),
    "NumberOfStudyRelatedSeries": (0x00201206, "IS"),
    "NumberOfStudyRelatedInstances": (0x00201208, "IS"),
    "NumberOfSeriesRelatedInstances": (0x00201209, "IS"),
}
_BY_TAG = {tag: (keyword, vr) for keyword, (tag, vr) in COMMON.items()}


def tag_of(keyword: str) -> int | None:
    """The tag of a standard keyword, else None."""
    known = COMMON.get(keyword)
    if known is not None:
        return known[0]
    if not keyword.isidentifier():
        return None
    from pydicom.datadict import keyword_dict  # here: rare, and pydicom is slow to import

    return keyword_dict.get(keyword)


def vr_of(tag: int) -> str | None:
    """The VR the dictionary gives ``tag`` (the first of several), else None."""
    known = _BY_TAG.get(tag)
    if known is not None:
        return known[1]
    from pydicom.datadict import dictionary_VR  # here: rare, and pydicom is slow to import

    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return None


def keyword_of(tag: int) -> str:
    """The keyword of ``tag``, else ``""``."""
    known = _BY_TAG.get(tag)
    if known is not None:
        return known[0]
    from pydicom.datadict import keyword_for_tag  # here: rare, and pydicom is slow to import

    return str(keyword_for_tag(tag))


def all_keywords() -> tuple[str, ...]:
    """Every keyword of the dictionary (to suggest one for a misspelt keyword)."""
    from pydicom.datadict import keyword_dict  # here: rare, and pydicom is slow to import

    return tuple(keyword_dict)
