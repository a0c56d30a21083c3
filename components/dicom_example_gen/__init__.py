"""DicomExampleGen: DICOM mammograms -> patient-split gzip TFRecords."""

from components.dicom_example_gen.component import DicomExampleGen, IngestRejects

__all__ = ["DicomExampleGen", "IngestRejects"]
