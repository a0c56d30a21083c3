"""The atheris harnesses here are scripts for long runs, not pytest tests."""

collect_ignore = ["fuzz_dicom_reader.py"]
