"""Reason tags of facts only the parking family knows (dead-letter reasons and metric labels).

Facts every family shares are in :mod:`stadtlink.adapters.core.reasons`.
"""
from __future__ import annotations

# -- decoding: DATEX II and ParkAPI feeds
NOT_DATEX2 = "not-datex2"                            # the root element is not in a DATEX II namespace
UNSAFE_XML = "unsafe-xml"                            # a DTD or entity declaration (refused, never expanded)
UNSUPPORTED_PUBLICATION = "unsupported-publication"  # a DATEX II publication type the decoder does not read
WRONG_PUBLICATION = "wrong-publication"              # a publication other than the one the profile polls
BAD_PUBLICATION_TIME = "bad-publication-time"        # the feed's publication time is not readable
NOT_PARKAPI = "not-parkapi"                          # neither a ParkAPI v3 document nor a v1 lot list

# -- deliberate drops (counted, not dead-lettered)
SDI_TAG_REGISTRATION = "sdi-tag-registration"        # Nwave NPS405 fPort 10: a tag registration, no occupancy
AWAITING_STATIC_TABLE = "awaiting-static-table"      # real-time counts before the static table was read

# -- mapping
UNSUPPORTED_READING = "unsupported-reading"          # a reading kind the mapper has no rule for
INVALID_SITE_RECORD = "invalid-site-record"          # the site's registry record cannot be used
NO_OCCUPANCY = "no-occupancy"                        # a spot reading without an occupancy
SITE_NOT_IN_STATIC_LIST = "site-not-in-static-list"  # real-time counts of a site the static table lacks
SITE_WITHOUT_LOCATION = "site-without-location"      # neither the feed nor the registry locates the site

__all__ = [name for name in dir() if name.isupper()]
