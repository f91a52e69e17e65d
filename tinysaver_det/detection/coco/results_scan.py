"""Read a COCO results json straight into columns, without a Python object per entry (compiled, numba).

A COCO-sized results json holds over a million detections; ``json.loads`` builds a dict, a list
and six numbers for each, and that is most of the time of one evaluation (5.4 s of 13 s for a
155 MB file here) and most of its memory. This reader walks the file's bytes once in a compiled
loop and writes the four columns directly.

It is a shortcut, never a second meaning. It accepts only what it can read exactly as ``json.loads``
followed by :func:`~tinysaver_det.detection.coco.results_json.load_results_columns`' type checks
would: a json list of objects, each with integer ``image_id`` and ``category_id``, a ``bbox`` of four
numbers and a numeric ``score`` (other keys may hold a plain ASCII string, a number, ``true``,
``false`` or ``null``). For anything else (a repeated key, a nested extra value, a string escape or a non-ASCII byte, ``NaN``, a float id, a byte order
mark, a syntax error) it answers None, and the caller reads the file with ``json.loads``, which
gives the usual values or names the fault.

Numbers are converted exactly (correctly rounded, as ``float()`` does): a decimal with at most 15
significant digits and a power of ten within 10^±22 is one exact integer times or divided by one
exact power of ten, a single correctly rounded operation (Clinger's fast path); every other number
(17-digit ``repr`` floats, say) is collected as text and converted by numpy's correctly rounded
string-to-float cast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinysaver_det.detection.coco.compiled import AVAILABLE, compiled

__all__ = ["MIN_COMPILED_BYTES", "scan_results_file"]

# Below this size json.loads is quick, and loading the compiled reader would cost more than it saves.
MIN_COMPILED_BYTES = 4 << 20

# Exactly representable powers of ten: 10**22 < 2**53 * 2**22 has an exact double (5**22 < 2**53).
_POWERS_OF_TEN = np.array([10.0**k for k in range(23)])
_MAX_EXACT_INTEGER = 2**53
_MAX_DIGITS = 18  # significant digits that fit an int64 without overflow

# Keys and their slots; "bbox" and "score" land in one [N×5] float block (x, y, w, h, score).
_IMAGE_ID, _CATEGORY_ID, _BBOX, _SCORE, _OTHER = 0, 1, 2, 3, -1
_ALL_KEYS = 0b1111


def _ascii(word: str) -> np.ndarray:
    return np.frombuffer(word.encode("ascii"), dtype=np.uint8).copy()


_IMAGE_ID_BYTES, _CATEGORY_ID_BYTES, _BBOX_BYTES, _SCORE_BYTES = map(_ascii, ("image_id", "category_id", "bbox", "score"))
_TRUE_BYTES, _FALSE_BYTES, _NULL_BYTES = map(_ascii, ("true", "false", "null"))


@compiled
def _is_space(byte) -> bool:
    return byte == 32 or byte == 10 or byte == 13 or byte == 9


@compiled
def _skip_space(buf, i):
    n = len(buf)
    while i < n and _is_space(buf[i]):
        i += 1
    return i


@compiled
def _is_digit(byte) -> bool:
    return 48 <= byte <= 57


@compiled
def _number(buf, i):
    """Parse the json number at ``i`` (json's grammar: ``-?(0|[1-9]\\d*)(\\.\\d+)?([eE][-+]?\\d+)?``).

    Returns (end, valid, is_integer, negative, mantissa, exponent, exact) where the value is
    ``±mantissa * 10**exponent``; ``exact`` is False when the mantissa has more than 18 significant
    digits (it is then not the value, and only ``end`` and ``valid`` mean anything).
    """
    n = len(buf)
    j = i
    negative = False
    if j < n and buf[j] == 45:  # '-'
        negative = True
        j += 1
    if j >= n or not _is_digit(buf[j]):
        return j, False, False, negative, 0, 0, False
    mantissa = 0
    digits = 0
    exact = True
    if buf[j] == 48:  # a leading '0' stands alone
        j += 1
    else:
        while j < n and _is_digit(buf[j]):
            if digits < _MAX_DIGITS:
                mantissa = mantissa * 10 + (buf[j] - 48)
                digits += 1
            else:
                exact = False
            j += 1
    exponent = 0
    is_integer = True
    if j < n and buf[j] == 46:  # '.'
        is_integer = False
        j += 1
        if j >= n or not _is_digit(buf[j]):
            return j, False, False, negative, 0, 0, False
        while j < n and _is_digit(buf[j]):
            if mantissa == 0 and buf[j] == 48:
                exponent -= 1  # a leading zero of the fraction: no significant digit yet
            elif digits < _MAX_DIGITS:
                mantissa = mantissa * 10 + (buf[j] - 48)
                digits += 1
                exponent -= 1
            else:
                exact = False
            j += 1
    if j < n and (buf[j] == 101 or buf[j] == 69):  # 'e' / 'E'
        is_integer = False
        j += 1
        exponent_negative = False
        if j < n and (buf[j] == 43 or buf[j] == 45):
            exponent_negative = buf[j] == 45
            j += 1
        if j >= n or not _is_digit(buf[j]):
            return j, False, False, negative, 0, 0, False
        written = 0
        while j < n and _is_digit(buf[j]):
            if written < 100000:
                written = written * 10 + (buf[j] - 48)
            j += 1
        exponent += -written if exponent_negative else written
    return j, True, is_integer, negative, mantissa, exponent, exact


@compiled
def _exact_float(is_integer, negative, mantissa, exponent, exact):
    """(True, value) when Clinger's fast path gives the correctly rounded value, else (False, 0.0)."""
    if not exact or mantissa > _MAX_EXACT_INTEGER:
        return False, 0.0
    if is_integer or mantissa == 0:
        value = float(mantissa)
        if negative and not is_integer:
            value = -value  # "-0.0" is -0.0; the json integer "-0" is 0
        elif negative:
            value = -value if mantissa else 0.0
        return True, value
    if 0 <= exponent <= 22:
        value = float(mantissa) * _POWERS_OF_TEN[exponent]
    elif -22 <= exponent < 0:
        value = float(mantissa) / _POWERS_OF_TEN[-exponent]
    else:
        return False, 0.0
    return True, -value if negative else value


@compiled
def _spells(buf, start, stop, word):
    """True when buf[start:stop] holds exactly the bytes of ``word`` (a uint8 array)."""
    if stop - start != len(word) or stop > len(buf):
        return False
    for k in range(len(word)):
        if buf[start + k] != word[k]:
            return False
    return True


@compiled
def _key(buf, start, stop):
    """Which of the four keys the bytes buf[start:stop] spell, or _OTHER."""
    if _spells(buf, start, stop, _IMAGE_ID_BYTES):
        return _IMAGE_ID
    if _spells(buf, start, stop, _CATEGORY_ID_BYTES):
        return _CATEGORY_ID
    if _spells(buf, start, stop, _BBOX_BYTES):
        return _BBOX
    if _spells(buf, start, stop, _SCORE_BYTES):
        return _SCORE
    return _OTHER


@compiled
def _string_end(buf, i):
    """The index after the closing quote of the plain ASCII string opening at ``i``, or -1."""
    n = len(buf)
    j = i + 1
    while j < n:
        byte = buf[j]
        if byte == 34:  # '"'
            return j + 1
        if byte < 32 or byte > 126 or byte == 92:  # control, non-ASCII, backslash: json.loads decides
            return -1
        j += 1
    return -1


@compiled
def _literal_end(buf, i):
    """The index after ``true``, ``false`` or ``null`` at ``i``, or -1."""
    for word in (_TRUE_BYTES, _FALSE_BYTES, _NULL_BYTES):
        if _spells(buf, i, i + len(word), word):
            return i + len(word)
    return -1


@compiled
def _float_into(buf, i, numbers, slot, slow_slot, slow_start, slow_stop, n_slow):
    """Parse a number at ``i`` into ``numbers[slot]``; a number off the fast path is queued as text.

    Returns (end, n_slow), end -1 when there is no valid number at ``i``.
    """
    end, valid, is_integer, negative, mantissa, exponent, exact = _number(buf, i)
    if not valid:
        return -1, n_slow
    ok, value = _exact_float(is_integer, negative, mantissa, exponent, exact)
    if ok:
        numbers[slot] = value
    else:
        slow_slot[n_slow] = slot
        slow_start[n_slow] = i
        slow_stop[n_slow] = end
        n_slow += 1
    return end, n_slow


@compiled
def _scan(buf, image_ids, category_ids, numbers, slow_slot, slow_start, slow_stop):
    """Fill the columns from ``buf``; returns (entries, slow numbers), entries -1 when json.loads must read it.

    ``numbers`` is [N×5] flat: x, y, w, h, score of each entry.
    """
    n = len(buf)
    n_slow = 0
    count = 0
    i = _skip_space(buf, 0)
    if i >= n or buf[i] != 91:  # '['
        return -1, 0
    i = _skip_space(buf, i + 1)
    if i < n and buf[i] == 93:  # ']': no detections
        i += 1
    else:
        while True:
            if i >= n or buf[i] != 123 or count >= len(image_ids):  # '{'
                return -1, 0
            i = _skip_space(buf, i + 1)
            seen = 0
            while True:
                if i >= n or buf[i] != 34:  # a key
                    return -1, 0
                key_end = _string_end(buf, i)
                if key_end < 0:
                    return -1, 0
                key = _key(buf, i + 1, key_end - 1)
                i = _skip_space(buf, key_end)
                if i >= n or buf[i] != 58:  # ':'
                    return -1, 0
                i = _skip_space(buf, i + 1)
                if i >= n:
                    return -1, 0
                if key != _OTHER:
                    if seen & (1 << key):  # a repeated key: json.loads keeps the last, and decides
                        return -1, 0
                    seen |= 1 << key
                if key == _IMAGE_ID or key == _CATEGORY_ID:
                    end, valid, is_integer, negative, mantissa, exponent, exact = _number(buf, i)
                    if not (valid and is_integer and exact):
                        return -1, 0
                    value = -mantissa if negative else mantissa
                    if key == _IMAGE_ID:
                        image_ids[count] = value
                    else:
                        category_ids[count] = value
                    i = end
                elif key == _SCORE:
                    i, n_slow = _float_into(buf, i, numbers, count * 5 + 4, slow_slot, slow_start, slow_stop, n_slow)
                    if i < 0:
                        return -1, 0
                elif key == _BBOX:
                    if buf[i] != 91:
                        return -1, 0
                    for k in range(4):
                        i = _skip_space(buf, i + 1)
                        i, n_slow = _float_into(buf, i, numbers, count * 5 + k, slow_slot, slow_start, slow_stop,
                                                n_slow)
                        if i < 0:
                            return -1, 0
                        i = _skip_space(buf, i)
                        if i >= n or buf[i] != (44 if k < 3 else 93):  # ',' between, ']' after the fourth
                            return -1, 0
                    i += 1
                elif buf[i] == 34:
                    i = _string_end(buf, i)
                elif buf[i] == 45 or _is_digit(buf[i]):
                    end, valid = _number(buf, i)[:2]
                    i = end if valid else -1
                else:
                    i = _literal_end(buf, i)
                if i < 0:
                    return -1, 0
                i = _skip_space(buf, i)
                if i < n and buf[i] == 44:  # ',': another key
                    i = _skip_space(buf, i + 1)
                    continue
                if i < n and buf[i] == 125:  # '}'
                    i += 1
                    break
                return -1, 0
            if seen != _ALL_KEYS:
                return -1, 0
            count += 1
            i = _skip_space(buf, i)
            if i < n and buf[i] == 44:
                i = _skip_space(buf, i + 1)
                continue
            if i < n and buf[i] == 93:
                i += 1
                break
            return -1, 0
    if _skip_space(buf, i) != n:
        return -1, 0
    return count, n_slow


@compiled
def _gather_text(buf, starts, stops, width):
    """The bytes of each queued number, zero-padded to ``width`` (a numpy ``S<width>`` array's buffer)."""
    out = np.zeros((len(starts), width), dtype=np.uint8)
    for r in range(len(starts)):
        for k in range(stops[r] - starts[r]):
            out[r, k] = buf[starts[r] + k]
    return out


def scan_results_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The columns of a results json: (image_ids [N] int64, category_ids [N] int64, boxes_xywh [N×4]
    float64, scores [N] float64), in list order; None when the file is small, numba is not installed,
    or the file holds anything this reader leaves to ``json.loads`` (see the module's docstring).

    The values are the ones ``json.loads`` gives, bit for bit; they are not range-checked here.
    """
    path = Path(path)
    if not AVAILABLE or not path.is_file() or path.stat().st_size < MIN_COMPILED_BYTES:
        return None
    buf = np.fromfile(path, dtype=np.uint8)
    capacity = int(np.count_nonzero(buf == ord("{")))  # every entry opens one object
    image_ids = np.empty(capacity, dtype=np.int64)
    category_ids = np.empty(capacity, dtype=np.int64)
    numbers = np.empty(capacity * 5, dtype=np.float64)
    slow_slot = np.empty(capacity * 5, dtype=np.int64)
    slow_start = np.empty(capacity * 5, dtype=np.int64)
    slow_stop = np.empty(capacity * 5, dtype=np.int64)
    count, n_slow = _scan(buf, image_ids, category_ids, numbers, slow_slot, slow_start, slow_stop)
    if count < 0:
        return None
    if n_slow:
        starts, stops = slow_start[:n_slow], slow_stop[:n_slow]
        width = int((stops - starts).max())
        text = _gather_text(buf, starts, stops, width).view(f"S{width}").reshape(-1)
        numbers[slow_slot[:n_slow]] = text.astype(np.float64)
    numbers = numbers[:count * 5].reshape(count, 5)
    return image_ids[:count].copy(), category_ids[:count].copy(), numbers[:, :4].copy(), numbers[:, 4].copy()
