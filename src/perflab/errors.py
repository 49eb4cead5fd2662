"""The small hierarchy of expected errors; the CLI prints their message and exits 2."""


class PerflabError(Exception):
    """An expected error: bad input or an unmet requirement, told to the user in one line."""


class SpecError(PerflabError):
    """An experiment file (or a config built from it) is invalid."""


class ModelError(PerflabError):
    """A model file is missing, unreadable, or does not fit the config."""


class BackendUnavailable(PerflabError):
    """A backend cannot run here (package missing, no GPU, provider not in this build)."""


class Unsupported(PerflabError):
    """A backend cannot do what a config asks (a precision, a pipeline); the run is `unsupported`."""


class StoreError(PerflabError):
    """A result folder is missing, unwritable, or holds files perflab cannot read."""


class StoreVersionError(StoreError):
    """A stored file was written by a newer (or incompatible) schema version."""


class ImportFormatError(PerflabError):
    """A file given to an importer is not what it claims to be (truncated, wrong format, empty)."""
