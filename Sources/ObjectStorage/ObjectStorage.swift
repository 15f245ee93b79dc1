// ObjectStorage: see DESIGN.md for what this target owns.
