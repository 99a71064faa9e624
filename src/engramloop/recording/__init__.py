"""The recording: one schema (stream names, record shapes, version), the XDF codec the
recorder writes with, and the one reader that replay, score, sweep, report and training
use. Imports nothing of ours but ``core``, so drivers (file replay) and analysis share it.
"""
