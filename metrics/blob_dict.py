"""The preset zlib dictionary of packed bucket blobs (format 2 of `bucket_state.pack`).

4 KB of typical packed-state bytes (pickled field tuples of minute and hour buckets from
`bench/memory_per_series.py` traffic), so the first bytes of each small blob compress against
them: blobs are a few hundred bytes, too short for zlib to learn from themselves.

Never change these bytes: rings and recovery snapshots hold blobs compressed with them. A new
dictionary needs a new format byte in `bucket_state`.
"""

from __future__ import annotations

import base64

ZDICT_V2 = base64.b64decode(
    "lIeUTYwCSwBDaABB////egCkgmVDVt2dt37tf9/7977++/b++/7//39+/+//7/f3//3/v+/+/9//9//3+//f3/9/9//v//v/"
    "9/+/9/7/9/3//f//v/f9+/7//v+//3++//f77/v97t9u/97Wv1Zl0PYolIeUdJQoiIoFJ2Vr2ABDEM6yE41G4SDzjb/2fTL/"
    "VtKUh5SIigXtMNbVAEMQNu6Vk28IJNJRuxAeG2NlypSHlIiKBXgYOrsAQxCAewDwQUCHuRLwitLv9kOrlIeUiIoFxZIFoQBD"
    "EBmFQ5153sUrv2OP+c+BfYyUh5SIigVX2nqSAEMQb9yQ/nkrFk7vpOXfikzfbZSHlHSUKYwKc3VwcG9ydC12N5SMCnN1cHBv"
    "cnQtdjiUhpSMC2dwdC00by1taW5plIWUjAYyLjE0LjGUhZSJiYmHlChoJ03fBErwXRkASwBKDp4DAIoFgBDwyFt0lIWUdJQu"
    "gAWVTgcAAAAAAAAoSwFNngRLAE1HAk2eBEsaSwBLAEsATcACSw1NngRNhwFLREsjTZ4ESylNhARLIk2eBIoFsNOGvVVNngRK"
    "Da0XAE2EBErmWAMATWABigUTMNotQk1gAYoFcHuDiUBNngRNngRLAEsASwBLIUsASwCKBZCt4QxqSwBLAIoFMARQ2gqKCM0H"
    "o7L+mJcXigiP0mvNQpyXF4wKcmF0ZV9saW1pdJRLGoaUhZSMBmxlbmd0aJRLIoaUjARzdG9wlE1iBIaUhpQpKE2EBEsAQ7QA"
    "Xv///+AAgAAAIsYBS666X3Zs+b3b2+ve/f3fvb77+/vf779/7/v+/39/3/f7+/ff7/+/f/9/7/v9+//3/7///f+/9//f/v/v"
    "/+/v/9//f//+//3//3//v//7//3/f+//9//v///f/v//v//f/+///3/7///3//9/7/+//9//7/v3/v/9///7/3/9+///f7/9"
    "/v/f+/9/9/39/v+/329/ff739/e+2/e7/urr0tkjCggoACCUh5RNngRLAEOmAc7///8BAAEBAAABAAAAAAAAAAABAAACAQEA"
    "AAIBAAMBAAICAAIDAwUCAwAEBwUGBQQEBQMGBQcKBAwMEAgLEgwHCxEKDxEPFhYPFBIPExIRDxkOEBISHRYTFxURChoXEQkP"
    "EhUUDQwODhAKDQ0MFAwJDwkODgwICAUJBQkHBAUGAQQEAgQFAQIBAgABAAAAAgIBAAAAAAACAAEAAQAAAAAAAAABAZSHlE2e"
    "BEsAQ6YBzf///wEBAAEAAAEAAAAAAAAAAAEAAAICAQAAAwABAAMABQMEAQMEAgMDAwUIBQMFAwMDAwYLCAoJCwkTCAsNDw0M"
    "BxETEBUQEA8PEQwQFhMVEB4KFBUJGhMYFBMPDxIUDw8PFBcKDw0ODA0KCxIJDhIICwsQCwkJBwUIBgcJAwQEAgMFBQIDAgEB"
    "AQABAAACAAMAAAAAAAACAQAAAQAAAAAAAAAClIeUTYQESwBDvgBaAAAALwGAQQBSBAqyKumZMtvfLe+uu3ru7391P3d/f1/f"
    "vv7+//fvv39/f3/f7/3+/v/7/vu//d+/f79/7/3+//3++/9/+//v999/+//9/3+/3+/3/9/3/v7/7+/9/3/7//3/37/f/7/7"
    "/9+/+/3//f+//e/9/7//f/f3/v+/3/v3/+/93/9/v+/3+/37/33/3+93+/72373v/3f/u/7vb39/9vrt763966rd7te7T12b"
    "1UxGlBCEAAAAAECUh5RNhARLAEO8AJP+//8hAYAACgBDAkeW011Nubvd1a3d7ud+/a+/1399/v9f2+3+/t7vt/v73/vvv3+/"
    "v/v/3/7v7+/7/3/v7+/9/3/v/v/v/v/f/9/3+73//f/f3/f/7/9/7/7/f9/3/9//7/9/7/v++/9/9/39/7//9+/3/v+/+/v/"
    "f9/+/97/v/vf/79/7/9/v/v/e/fv+/3f79+/7/9/7/3d/v3/v399/e/ePe/Z+3fu3ndWuPXW/dNUcpgCRCEAghCUh5RNngRL"
    "AEO3APUAAADgAIIUGCQAQS17a7eP237v37/f+/3+337/u/39/7/v7/3/+/f37/9/3/3/v/7/7//99//3/9//7/f/9/v/v/+/"
    "/3///f//v//f/9///9//+/3//7//7/+///f///3//9///v//+/3/7//v//v/+///+//f/9//v//f+//7/7/7//7/3/9///f3"
    "//v/79+9/fv9+/3/d/f7f9/e/+/f33f3++3vv7M3PXttOzKxsAIAgAAIlIeUTYQESwBDtQCLAAAA5wDAACE5JJsvlN7zu3y+"
    "7/33e33e/f++v/X7v/7/v3/t7/73//v9//t/9/7/f/v397/9/+/+/7/v/7/3/f/v//9//3/v//9/v9////f/v/+//v/+/7//"
    "v/3/7//f/9/+//v/v/3/9//7/7//ff9/f/9/9/+///ff+/3/3/9//v/3/3/7/7/v37/v999+/v/7/9999/ev3ffv+739vfff"
    "3a+9bz29a+t7VWyoJBBAAECUh5RNRwJLAENgAD3///99AIAAShm6107d7t3r3e33e999/7/9/v/7/39/+//f/f37/v/f9//f"
    "/3/7/+//f//3/7/v9/9/79/7//f/3+/+/v/f77+/79/f39/33/v77/3/fnb329d1NYCglIeUdJQoiIoFXcERJwFDEEg9F4ex"
    "5u2u+O7pLdA/hHmUh5SIigXsZQbwAEMQDui9T8B3ZFCgI5tfM7AdT5SHlIiKBcaumsEAQxBU9x+dHorkof7FtKF0HUe5lIeU"
    "iIoFi+4RvwBDEIJF6gruKnOBdCTCKGBJvAiUh5SIigUK+k28AEMQJUkW77IjTZh8SSZJHr6JTJSHlHSUKYwKc3VwcG9ydC12"
    "N5SMCnN1cHBvcnQtdjiUhpSMC2dwdC00by1taW5plIWUjAYyLjE0LjGUhZSJiYmHlChoJ02eBEoNrRcASwBK5lgDAIoFsNOG"
    "vVV0lIWUdJQugAWVNAcAAAAAAAAoSwFNngRLAE0wAk2eBEsWSwBLAEsATdwCSwtNngRNkAFLMksVTZ4ESylNiARLKU2eBIoF"
    "kPU/IFZNngRKZ3oXAE2IBEp1egMATW4BigUL6ySeQ01uAYoFvyVO/ERNngRNngRLAEsASwBLIEsASwCKBYAjJsNFSwBLAIoF"
    "sBdH9QqKCOAg8t9EnJcXigg7t//5iZ+XF4wKcmF0ZV9saW1pdJRLFoaUhZSMBmxlbmd0aJRLKYaUjARzdG9wlE1fBIaUhpQp"
    "KE2IBEsAQ7AAcP///70AgARQMsbNvu7Xu3u/fd3v979e30//vv3++/9/v+/fv79+/++//v+/v/3/7+/v/f/7/fv/f/7/3/9/"
    "7//v+/9//9///f/f//+//9//v/7//+//3+/+//9//+//+//9//7//v/3/9//f/3//f/+//v//f7//f/9/v/7//7//f/9/v/f"
    "//f/3+//e/+/39/93/9/9/v97/u++/f399+7/3d7fq3b3X11WUKgEJSHlE2eBEsAQ58B2////wEAAAIBAwADAAAAAgAFAgAE"
    "AwMEBgQDBAMDBwIJCQYGBQgJBgcJBwoOCgcOBgUIEQkMEAsOERUOERQOExYVFhsQDAsVDxYPGBsRFhQNGBQODhEPEw4LCwsQ"
    "DQgVDQkFCg4NCggLCgYDBAcHBwUDAwYEAQMFAwcEAgQDAgMAAQIAAQAAAQEBAQAAAQAAAAAAAAABAAAAAAAAAAGUh5RNngRL"
    "AEOiAdf///8BAAABAAECAAEDAQQAAQECBAMBAwMCAwwABgYFBggEBAcECQUFBAcJCgoODAUHCgcOBwsOEBAPDBMMFQUVEg4Y"
    "FhMWFQ4NFxEZEQ4VDREeEhQVDg4NEg4OBw0MDAwOEwsICwMPCg0LCgwEBQMGBAgFCAEDBQQCAgYGAgUDAgQDAQABAgABAAIA"
    "AQABAAEAAAAAAAAAAQAAAAAAAAABlIeUTYgESwBDvQBlAAAAJwGAEKhgsyRc21LNtqu227uze37ve73+/371vv977v9/7/u9"
    "vve/f33/e+/v7/f399//e9/3v+//3v/73f7+/7/7+/f7/7/7/9+//f/+//v/+/+/v/f+//f/3/9/3//f/v/9//++/9/7/9//"
    "f97//f39/9//f7/3+//3+/9/vvv9/v++/+/39/3/3+/f9/3+//v3/fv7929u3++/v3e/t7t7va7u+/d2vu+eyduiFQqQIogQ"
    "RAAABJSHlE2IBEsAQ7wAif7//x0BgAACAVIISJhQxy4k993u3fa/X3X177bf777u399/fv3/b/v3+9/e/e/7v+//ff3/fff/"
    "9/f3/3+//7/fv99/3/9/3/9//3+/v/u/v/f/v/v/v+//f//v/+/+//7//v/v+/v7/9/+//9+/f/f+/9/3/3/3+/9/+//f/v/"
    "f37//3/79+/e++/e/f399/39+++/v/v77++977v2/vv33fe/v3+2333vb967dW1Varu3RC6KQIQBsJSHlE2eBEsAQ7EACAEA"
    "ALIAlIUIre9a9vutd+vv3ftvv9/7v7u++/v/v+/vvv/v/7/7+//9//f/9/7/f//v//9//f9//7/7///v/f/7/7//f//f/9//"
    "3/7//v/v/v/9/7/9//9//v//9//7///f/+//3//f/7//9//v7///9//9//f/+//f/f/3//9//v/9//v9//f/3/f9/9//ff9/"
    "3+/9/7/f3/v7/7377/vvfu79nu7trNvVreyQBIKUh5RNiARLAEO4AIsAAAD6AIAAEhkzkfcTd/na59vu/d2/vu9+++/O9/t7"
    "//9+9//b/v37v+/9+//ff7/3f/9//f9//3+//f/f9//7///+/v//9//3/7//f/v/3//v//v/v/7//+/9/3//3//ff//f//7/"
    "7/3/33/v/9/3/7/3/v/fv//3/3/9///9+/f3/3/f9//37/+/v//fv+//f99/3+93/39++7777+9v3v9vt23/u72/esc1pSGA"
    "iAEgAAEAgJSHlE0wAksAQ18AP////4oAgGCE0Vo71bdve99799vf9+/39+/f+79/vv9/9/+//9/f/3/9/+//93+/f/39//v/"
    "v/3/7/v/v/v//f3+//v7/7/fvf+/79/v9+/t77/d3bd611EsooQAgJSHlHSUKIiKBVdfvcYAQxA82Yqb8nk7vS1KpRnA5LpV"
    "lIeUiIoFx4mQoABDEObn9NufLXkmgkC5tLM6gMSUh5SISjT06X1DENM6/filWOQi+YPQST6niheUh5SISl3kNnhDEKN07Gpb"
    "Wyq1eSOFNN0zAZqUh5SISn1MbnFDEMePL9dYifrhD683tmt+FoGUh5R0lCmMCnN1cHBvcnQtdjeUjApzdXBwb3J0LXY4lIaU"
    "jAtncHQtNG8tbWluaZSFlIwGMi4xNC4xlIWUiYmJh5QoaCdNngRKZ3oXAEsASnV6AwCKBZD1PyBWdJSFlHSULg=="
)
