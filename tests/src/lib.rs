//! Helpers for MedMesh integration tests.
