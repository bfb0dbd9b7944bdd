"""The hospital's records in and out: FHIR R4 from the EHR mapped onto the portal's own models."""
