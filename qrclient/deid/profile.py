"""What PS3.15's Basic Application Level Confidentiality Profile does that dicognito does not.

dicognito replaces every person name (PN), every UID except class and transfer syntax
UIDs, every date, and a list of IDs, addresses and institution attributes, and removes
a few more. Table E.1-1 of PS3.15 asks more of the Basic Profile: it removes free text
(comments, descriptions, protocol names), patient characteristics (age, sex, size,
weight), device serial numbers, private attributes, overlays and curves. The keywords
below are the rows of that table (2020 edition) whose Basic Profile action is X, Z or
D and whose values dicognito leaves as they are: not PN or UI, and not one of its
lists. Dates and times are left to the date option in use (Retain Longitudinal
Temporal Information with Full or Modified Dates: both keep or shift them), except
those the table removes under either option: the birth date and time, GPS time.

Where the table allows a choice (X/Z, X/D, X/Z/D), the mildest is taken that keeps a
conformant object: a dummy value if D is allowed, else an empty one if Z is, else the
attribute goes. Sequences whose UIDs may be replaced (U) or that may be dummied (D)
are kept: every name, UID and date inside them is replaced like any other.
"""

from __future__ import annotations


def _keywords(text: str) -> list[str]:
    return text.split()


# X: removed.
REMOVED = _keywords("""
    AcquisitionComments AcquisitionContextSequence AcquisitionProtocolDescription
    ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial AdmissionID
    AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription Allergies Arbitrary
    AuthorObserverSequence BeamDescription BolusDescription CameraOwnerName CassetteID
    ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialSeriesDescription
    ClinicalTrialSeriesID ClinicalTrialTimePointDescription
    CommentsOnThePerformedProcedureStep CompensatorDescription
    ConfidentialityConstraintOnPatientDataDescription
    ConsultingPhysicianIdentificationSequence ContainerComponentID ContainerDescription
    ContentCreatorIdentificationCodeSequence ContributionDescription
    CustodialOrganizationSequence DataSetTrailingPadding DecompositionDescription
    DerivationDescription DeviceDescription DeviceSettingDescription
    DigitalSignaturesSequence DischargeDiagnosisDescription DistributionAddress
    DoseReferenceDescription EntityDescription EntityName
    EquipmentFrameOfReferenceDescription EthnicGroup FixationDeviceDescription
    FractionGroupDescription FrameComments GPSAltitude GPSAltitudeRef GPSAreaInformation
    GPSDOP GPSDestBearing GPSDestBearingRef GPSDestDistance GPSDestDistanceRef
    GPSDestLatitude GPSDestLatitudeRef GPSDestLongitude GPSDestLongitudeRef
    GPSDifferential GPSImgDirection GPSImgDirectionRef GPSLatitude GPSLatitudeRef
    GPSLongitude GPSLongitudeRef GPSMapDatum GPSMeasureMode GPSProcessingMethod
    GPSSatellites GPSSpeed GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack GPSTrackRef
    GPSVersionID GantryID GeneratorID HumanPerformerOrganization IconImageSequence
    IdentifyingComments ImageComments ImagePresentationComments
    ImagingServiceRequestComments Impressions InstanceOriginStatus
    InstitutionCodeSequence InstitutionalDepartmentTypeCodeSequence
    InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
    InterpretationApproverSequence InterpretationDiagnosisDescription
    InterpretationIDIssuer InterpretationText IssuerOfAdmissionID
    IssuerOfAdmissionIDSequence IssuerOfServiceEpisodeID
    IssuerOfServiceEpisodeIDSequence LensMake LensModel LensSerialNumber
    LensSpecification LongDeviceDescription MAC MakerNote MedicalAlerts
    ModifiedAttributesSequence ModifiedImageDescription ModifyingDeviceID
    MultienergyAcquisitionDescription OperatorIdentificationSequence
    OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEntererLocation
    OriginalAttributesSequence OtherPatientIDsSequence ParticipantSequence PatientAge
    PatientBirthTime PatientComments PatientInstitutionResidence
    PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence
    PatientSize PatientState PatientTransportArrangements PatientWeight
    PerformedLocation PerformedProcedureStepDescription PerformedStationAETitle
    PerformedStationGeographicLocationCodeSequence PerformedStationName
    PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
    PersonAddress PersonTelecomInformation PersonTelephoneNumbers
    PhysiciansOfRecordIdentificationSequence
    PhysiciansReadingStudyIdentificationSequence PlateID PreMedication PregnancyStatus
    PrescriptionDescription PriorTreatmentDoseDescription RTPlanDescription RTPlanName
    ReasonForOmissionDescription ReasonForRequestedProcedureCodeSequence ReasonForStudy
    ReasonForTheImagingServiceRequest ReasonForTheRequestedProcedure ReasonForVisit
    ReasonForVisitCodeSequence ReferencedDigitalSignatureSequence
    ReferencedPatientAliasSequence ReferencedPatientSequence
    ReferencedPerformedProcedureStepSequence ReferencedSOPInstanceMACSequence
    ReferencedStudySequence ReferringPhysicianAddress
    ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
    RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
    RequestedProcedureLocation RespiratoryMotionCompensationTechniqueDescription
    ResultsComments ResultsDistributionListSequence ResultsIDIssuer
    ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
    ScheduledPerformingPhysicianIdentificationSequence ScheduledProcedureStepDescription
    ScheduledProcedureStepLocation ScheduledStationAETitle
    ScheduledStationGeographicLocationCodeSequence ScheduledStationName
    ScheduledStationNameCodeSequence ScheduledStudyLocation
    ScheduledStudyLocationAETitle SeriesDescription ServiceEpisodeDescription
    ServiceEpisodeID SetupTechniqueDescription ShieldingDeviceDescription
    SlideIdentifier SmokingStatus SourceManufacturer SpecialNeeds
    SpecimenAccessionNumber SpecimenDetailedDescription SpecimenShortDescription
    StudyComments StudyDescription StudyIDIssuer TelephoneNumberTrial TextComments
    TextString TimezoneOffsetFromUTC TopicAuthor TopicKeywords TopicSubject TopicTitle
    TreatmentMachineName UDISequence UniqueDeviceIdentifier
    VerbalSourceIdentifierCodeSequenceTrial VisitComments XRayDetectorLabel
""")

# Z: kept empty (type 2: the attribute must be present).
EMPTIED = _keywords("""
    BarcodeValue ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolName
    ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID
    ConceptualVolumeCombinationDescription ConceptualVolumeDescription
    DeviceAlternateIdentifier FractionationNotes IssuerOfTheContainerIdentifierSequence
    IssuerOfTheSpecimenIdentifierSequence LabelText ManufacturerDeviceIdentifier
    PatientBirthDate PatientSex PatientSexNeutered PrescriptionNotes
    PrescriptionNotesSequence RTAccessoryDeviceSlotID RTAccessoryHolderSlotID
    RTPhysicianIntentNarrative RadiationGenerationModeDescription ReasonForSuperseding
    RequestedProcedureDescription SourceSerialNumber SpecimenPreparationSequence
    TreatmentTechniqueNotes VerifyingObserverIdentificationCodeSequence
""")

# D: a dummy value (type 1: the attribute must have one).
DUMMIED = _keywords("""
    AcquisitionDeviceProcessingDescription ClinicalTrialProtocolEthicsCommitteeName
    ClinicalTrialProtocolID ClinicalTrialSponsorName ClinicalTrialSubjectID
    ClinicalTrialSubjectReadingID ContainerIdentifier ContrastBolusAgent DetectorID
    DeviceLabel DeviceSerialNumber EntityLabel EntityLongLabel FlowIdentifier
    FrameOriginTimestamp InterlockDescription InterlockOriginDescription ProtocolName
    RTPlanLabel RTPrescriptionLabel RTToleranceSetLabel RTTreatmentApproachLabel
    RadiationDoseIdentificationLabel RadiationDoseInVivoMeasurementLabel
    RadiationGenerationModeLabel SourceIdentifier SpecimenIdentifier
    TreatmentPositionGroupLabel TreatmentSite TreatmentToleranceViolationDescription
    UserContentLabel UserContentLongLabel VerifyingOrganization XRayDetectorID
    XRaySourceID
""")
