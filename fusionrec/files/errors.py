"""The one error a file that fusionrec will not open raises."""


class ModelFileError(ValueError):
    """A file fusionrec will not open as it is, and why: what to do is in the message.

    Raised for files that are damaged or incomplete, written by a newer fusionrec,
    hostile (naming a class outside the allow-list, an entry outside the archive,
    arrays that need pickle, sizes that lie), or pickles opened without the opt-in.
    """
