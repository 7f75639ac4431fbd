"""Dates in the admin as the console shows them: ``2026-11-30 19:07:07 UTC`` (ISO order, 24 h, the zone named).

Django's English formats ("Nov. 30, 2026, 7:07 p.m.", no zone) are used for every name not set here.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
