"""The container format's version numbers, apart so that ``nwc --version`` reads them without
loading the container code."""

FORMAT_VERSION = 1  # major: a reader rejects any other major version
FORMAT_MINOR = 1  # minor: only appends fields, so readers accept any minor of their major
