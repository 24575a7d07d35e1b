"""Realistic customer rows for benchmarks, as CSV: a million in a few seconds.

Every phone number is valid for `phonenumbers` and unique, every e-mail unique; countries come
with their own names, e-mail providers, time zones and languages; value is skewed as in a real
book (a few enterprise accounts carry most profit, ~10% of customers lose money, students have
high potential). Output is deterministic for a seed, whatever the number of CPUs: the file is
made of fixed-size chunks, each from its own seed, generated in parallel and concatenated.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

__all__ = ["COUNTRIES", "HEADER", "generate_customers"]

CHUNK_ROWS = 100_000

HEADER = (
    "external_id",
    "name",
    "email",
    "phone",
    "country",
    "timezone",
    "language",
    "revenue",
    "cost_to_serve",
    "potential_value",
    "segment",
    "signup_channel",
)
_SCRAMBLE = 48_271  # prime, coprime with every phone-number capacity below (powers of 2 and 5)


@dataclass(frozen=True, slots=True)
class _PhoneRange:
    """National numbers `prefix` + (`low` + i, `width` digits) for i < `capacity`; all valid."""

    prefix: str
    low: int
    capacity: int
    width: int
    timezone: str


@dataclass(frozen=True, slots=True)
class _Country:
    code: str
    weight: float
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    two_surnames: bool
    domains: tuple[str, ...]
    languages: tuple[str, ...]  # repeated entries weight the choice
    phones: tuple[_PhoneRange, ...]
    ascii_first: tuple[str, ...] = field(init=False)
    ascii_last: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ascii_first", tuple(_ascii(n) for n in self.first_names))
        object.__setattr__(self, "ascii_last", tuple(_ascii(n) for n in self.last_names))


def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if c.isascii() and c.isalpha()).lower()


def _us(codes: str, timezone: str) -> tuple[_PhoneRange, ...]:
    # Exchange 200-999: the seven digits after the area code run from 2000000 to 9999999.
    return tuple(_PhoneRange(code, 2_000_000, 8_000_000, 7, timezone) for code in codes.split())


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_SPANISH_FIRST = _words(
    "María José Antonio Carmen Manuel Ana Francisco Laura David Lucía Javier Isabel Daniel Marta "
    "Carlos Elena Miguel Pilar Alejandro Sofía Juan Paula Pablo Cristina Sergio Raquel Jorge Nuria"
)
_SPANISH_LAST = _words(
    "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz "
    "Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez Vázquez "
    "Ramos Gil Serrano Blanco Molina Castro Ortega Rubio Núñez Iglesias"
)
_ENGLISH_LAST = _words(
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson "
    "Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott "
    "Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans"
)

COUNTRIES = (
    _Country(
        code="US",
        weight=0.40,
        first_names=_words(
            "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William "
            "Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa "
            "Daniel Nancy Matthew Ashley Anthony Emily Mark Michelle Luis Rosa Carlos Ana"
        ),
        last_names=_ENGLISH_LAST + _words("Garcia Rodriguez Martinez Hernandez Lopez Nguyen Kim"),
        two_surnames=False,
        domains=_words(
            "gmail.com yahoo.com outlook.com icloud.com hotmail.com aol.com comcast.net att.net"
        ),
        languages=("en",) * 7 + ("en-US",) * 2 + ("es",) * 1,
        phones=(
            *_us(
                "201 202 212 215 305 347 404 407 410 614 617 646 703 704 718 786 813 917",
                "America/New_York",
            ),
            *_us("313", "America/Detroit"),
            *_us("210 214 312 414 504 512 612 615 713 773 816", "America/Chicago"),
            *_us("303 505 720 801", "America/Denver"),
            *_us("480 602", "America/Phoenix"),
            *_us("206 213 310 408 415 503 510 619 702 818 949", "America/Los_Angeles"),
        ),
    ),
    _Country(
        code="MX",
        weight=0.22,
        first_names=_words(
            "Juan María José Guadalupe Luis Alejandra Fernando Ximena Diego Valeria Jorge Fernanda "
            "Miguel Daniela Ricardo Andrea Eduardo Mariana Arturo Gabriela Héctor Verónica Raúl "
            "Adriana"
        ),
        last_names=_words(
            "Hernández García Martínez López González Pérez Rodríguez Sánchez Ramírez Cruz Flores "
            "Gómez Morales Vázquez Reyes Jiménez Torres Díaz Gutiérrez Ruiz Mendoza Aguilar Ortiz "
            "Moreno Castillo Romero Álvarez Méndez Chávez Rivera Juárez Domínguez"
        ),
        two_surnames=True,
        domains=_words("gmail.com hotmail.com yahoo.com.mx outlook.com prodigy.net.mx live.com.mx"),
        languages=("es",) * 9 + ("es-MX",) * 3 + ("en",) * 1,
        phones=(
            _PhoneRange("55", 0, 10**8, 8, "America/Mexico_City"),
            _PhoneRange("33", 0, 10**8, 8, "America/Mexico_City"),
            _PhoneRange("222", 0, 10**7, 7, "America/Mexico_City"),
            _PhoneRange("81", 0, 10**8, 8, "America/Monterrey"),
            _PhoneRange("664", 0, 10**7, 7, "America/Tijuana"),
            _PhoneRange("998", 0, 10**7, 7, "America/Cancun"),
        ),
    ),
    _Country(
        code="ES",
        weight=0.20,
        first_names=_SPANISH_FIRST,
        last_names=_SPANISH_LAST,
        two_surnames=True,
        domains=_words("gmail.com hotmail.es yahoo.es telefonica.net outlook.es movistar.es"),
        languages=("es",) * 8 + ("es-ES",) * 1 + ("ca",) * 2 + ("eu",) * 1 + ("gl",) * 1,
        phones=(
            *(_PhoneRange(f"6{d}", 0, 10**7, 7, "Europe/Madrid") for d in "0123456789"),
            _PhoneRange("71", 0, 10**7, 7, "Europe/Madrid"),
            _PhoneRange("722", 0, 10**6, 6, "Atlantic/Canary"),
        ),
    ),
    _Country(
        code="GB",
        weight=0.12,
        first_names=_words(
            "Oliver Amelia George Isla Harry Ava Noah Mia Jack Ivy Charlie Lily Leo Florence Jacob "
            "Emily Freddie Sophia Alfie Grace Siobhan Rhys Aisha Mohammed"
        ),
        last_names=_ENGLISH_LAST + _words("Davies Patel Khan Wood Hall Clarke Hughes Morgan"),
        two_surnames=False,
        domains=_words("gmail.com hotmail.co.uk btinternet.com yahoo.co.uk outlook.com sky.com"),
        languages=("en",) * 9 + ("en-GB",) * 2 + ("cy",) * 1,
        phones=tuple(
            _PhoneRange(p, 0, 10**8, 8, "Europe/London") for p in _words("71 73 74 75 78")
        ),
    ),
    _Country(
        code="FR",
        weight=0.06,
        first_names=_words(
            "Gabriel Louise Léo Jade Raphaël Emma Arthur Ambre Louis Alice Jules Rose Adam Chloé "
            "Lucas Léa Hugo Manon Paul Inès"
        ),
        last_names=_words(
            "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel "
            "Lefèvre Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine"
        ),
        two_surnames=False,
        domains=_words("gmail.com orange.fr free.fr laposte.net sfr.fr hotmail.fr wanadoo.fr"),
        languages=("fr",) * 9 + ("fr-FR",) * 1,
        # 06 39 and 06 9x are not mobile ranges; 07 3x-7x are.
        phones=tuple(
            _PhoneRange(p, 0, 10**7, 7, "Europe/Paris")
            for p in _words("61 62 64 65 66 67 68 73 74 75 76 77 78")
        ),
    ),
)

_CHANNELS = ("web",) * 9 + ("store",) * 5 + ("phone",) * 3 + ("partner",) * 2 + ("app",) * 1


def _phone_text(country: str, nsn: str, split: int, variant: float) -> str:
    """The national significant number `nsn` written the ways people write it."""
    if country == "US":
        if variant < 0.4:
            return f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}"
        if variant < 0.7:
            return f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}"
        if variant < 0.9:
            return f"+1 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"
        return nsn
    if country == "ES":
        if variant < 0.5:
            return f"{nsn[:3]} {nsn[3:6]} {nsn[6:]}"
        if variant < 0.8:
            return f"+34 {nsn}"
        return nsn
    if country == "MX":
        if variant < 0.5:
            return f"{nsn[:split]} {nsn[split:-4]} {nsn[-4:]}"
        if variant < 0.8:
            return f"+52 {nsn}"
        return nsn
    if country == "GB":
        if variant < 0.6:
            return f"0{nsn[:4]} {nsn[4:]}"
        if variant < 0.9:
            return f"+44 {nsn[:4]} {nsn[4:]}"
        return f"0{nsn}"
    # FR
    pairs = f"{nsn[1:3]} {nsn[3:5]} {nsn[5:7]} {nsn[7:]}"
    if variant < 0.6:
        return f"0{nsn[0]} {pairs}"
    if variant < 0.9:
        return f"+33 {nsn[0]} {pairs}"
    return f"0{nsn}"


# (segment, cumulative share, log of the median revenue, sigma): lognormal revenue per segment.
_SEGMENTS = (
    ("enterprise", 0.01, math.log(250_000), 0.8),
    ("smb", 0.13, math.log(8_000), 0.9),
    ("student", 0.20, math.log(150), 0.6),
    ("retail", 1.0, math.log(600), 1.0),
)
_STUDENT_POTENTIAL = math.log(20_000)


def _values(rng: random.Random) -> tuple[str, float, float, float]:
    """(segment, revenue, cost to serve, potential value): skewed like a real book.

    About 1% enterprise accounts carry most of the profit, ~12% small businesses, ~7% students
    and young professionals (little revenue, high potential, often loss-making), the rest retail;
    about 10% cost more to serve than they bring in.
    """
    u = rng.random()
    for segment, share, mu, sigma in _SEGMENTS:  # noqa: B007 - the loop finds the segment
        if u < share:
            break
    revenue = math.exp(mu + sigma * rng.gauss())
    student = segment == "student"
    if rng.random() < (0.30 if student else 0.085):
        cost = revenue * (1.1 + 1.4 * rng.random()) + 20 + 180 * rng.random()
    else:
        cost = revenue * (0.25 + 0.6 * rng.random())
    if student:
        potential = math.exp(_STUDENT_POTENTIAL + 0.7 * rng.gauss())
    elif rng.random() < 0.05:
        potential = revenue * (4 + 11 * rng.random())  # room to grow
    else:
        potential = revenue * (0.3 + 1.5 * rng.random())
    return segment, revenue, cost, potential


def _generate_chunk(path: Path, seed: int, first: int, count: int) -> None:
    """Write rows `first` .. `first + count - 1` (no header) to `path`."""
    rng = random.Random(f"{seed}:{first}")
    random_ = rng.random
    # The same for every chunk: where each phone range's scrambled sequence starts.
    starts = random.Random(seed)
    offsets = [[starts.randrange(r.capacity) for r in c.phones] for c in COUNTRIES]
    total = sum(c.weight for c in COUNTRIES)
    thresholds = list(itertools.accumulate(c.weight / total for c in COUNTRIES))
    thresholds[-1] = 1.0
    lines: list[str] = []
    for i in range(first, first + count):
        u = random_()
        index = 0
        while u >= thresholds[index]:
            index += 1
        country = COUNTRIES[index]
        # Phone: the row number picks a range (i % R) and, scrambled by an affine map modulo
        # the range's capacity (a bijection), a number in it: unique, but not sequential.
        ranges = country.phones
        slot = i % len(ranges)
        phone_range = ranges[slot]
        inner = (i // len(ranges) * _SCRAMBLE + offsets[index][slot]) % phone_range.capacity
        nsn = f"{phone_range.prefix}{phone_range.low + inner:0{phone_range.width}d}"

        first_at = int(random_() * len(country.first_names))
        last_at = int(random_() * len(country.last_names))
        name = f"{country.first_names[first_at]} {country.last_names[last_at]}"
        local = f"{country.ascii_first[first_at]}.{country.ascii_last[last_at]}"
        if country.two_surnames and random_() < 0.6:
            name = f"{name} {country.last_names[int(random_() * len(country.last_names))]}"
        domain = country.domains[int(random_() * len(country.domains))]
        # The row number makes the address unique; a few are typed in capitals, a few missing.
        email = f"{local}{i}@{domain}"
        u = random_()
        if u < 0.03:
            email = email.upper() if u < 0.01 else ""
        u = random_()
        phone = "" if u < 0.02 else _phone_text(country.code, nsn, len(phone_range.prefix), u)
        language = country.languages[int(random_() * len(country.languages))]
        segment, revenue, cost, potential = _values(rng)
        lines.append(
            ",".join(
                (
                    f"CUST-{i + 1:08d}",
                    name,
                    email,
                    phone,
                    country.code,
                    phone_range.timezone,
                    language,
                    f"{revenue:.2f}",
                    f"{cost:.2f}",
                    "" if random_() < 0.03 else f"{potential:.2f}",
                    segment,
                    _CHANNELS[int(random_() * len(_CHANNELS))],
                )
            )
        )
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def generate_customers(path: Path, rows: int, seed: int, workers: int | None = None) -> None:
    """Write a header and `rows` customers to `path` as CSV (UTF-8, no quoting needed)."""
    chunks = [(first, min(CHUNK_ROWS, rows - first)) for first in range(0, rows, CHUNK_ROWS)]
    parts = [path.with_name(f"{path.name}.part{n}") for n in range(len(chunks))]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    try:
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(_generate_chunk, part, seed, first, count)
                    for part, (first, count) in zip(parts, chunks, strict=True)
                ]
                for future in futures:
                    future.result()
        else:
            for part, (first, count) in zip(parts, chunks, strict=True):
                _generate_chunk(part, seed, first, count)
        with path.open("wb") as out:
            out.write((",".join(HEADER) + "\n").encode())
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
