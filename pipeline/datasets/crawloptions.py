"""The options of every web crawl that say how it treats the hosts it fetches from.

Declared once as a dataclass the recipes' fetch options inherit (``class FetchOptions(PolitenessOptions)``),
so every caption/URL list is crawled with the same manners and the same flags; the behaviour
itself lives in :mod:`vlprep.pipeline.sources.politeness`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..sources.politeness import DEFAULT_CONTACT, Politeness, check_contact
from .recipe import option


@dataclass(frozen=True)
class PolitenessOptions:
    contact: str = option(DEFAULT_CONTACT, "URL or mailto: address sent in every request's User-Agent "
                          "(vlprep/VERSION (+CONTACT)), where a site owner can learn about your crawl and reach you.",
                          parse=check_contact, metavar="URL")
    per_host: int = option(8, "Most requests one worker process has open to one host at a time.", type=int, low=1,
                           metavar="N")
    retry_after_max: float = option(60.0, "Longest pause honoured when a host answers 429 (or 503) with "
                                    "Retry-After; a longer one fails the row as http_429, retried by a later run.",
                                    type=float, low=0, metavar="SECONDS")
    robots_txt: bool = option(False, "Read each host's robots.txt and skip the URLs it disallows for vlprep "
                              "(cause robots_txt). X-Robots-Tag opt-outs are always honoured.", type=bool)


def politeness(options: PolitenessOptions) -> Politeness:
    """The crawl's manners from its options."""
    return Politeness(contact=options.contact, per_host=options.per_host, retry_after_max=options.retry_after_max,
                      robots_txt=options.robots_txt)
