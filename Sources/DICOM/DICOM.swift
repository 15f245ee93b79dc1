// DICOM: the Swift API over the DCMTK shim.
