//! The MedMesh container runner (grows in issue 4).
