"""The bare-RQ baseline job: does nothing."""


def noop():
    return None
