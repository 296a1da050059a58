//! Transcript harness for hato's RFC spec tests.
