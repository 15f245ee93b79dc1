// Keyed UIDs for values other than UIDs of the file: derived with the de-identifier's key, so the same input
// gives the same UID on every run and replica, and outsiders cannot recompute it.

extension Deidentifier {
    /// A `2.25.…` UID keyed on `kind` and `value` (e.g. kind `uid-conflict`, the pseudonymous SOP Instance UID
    /// and a content hash), distinct from every pseudonym of an original UID.
    public func keyedUID(kind: String, _ value: String) -> String {
        pseudonymizer.uid(kind + ":" + value)
    }
}
