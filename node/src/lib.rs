//! The MedMesh node (grows in issue 3).
