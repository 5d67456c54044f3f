"""Detection coverage against MITRE ATT&CK: the catalog, detections and their mappings, coverage,
gaps, overlaps, health, drift and history (docs/coverage.md).

ATT&CK® is a registered trademark of The MITRE Corporation; the ATT&CK data is © The MITRE
Corporation, used under the ATT&CK Terms of Use (see `ATTRIBUTION`), shown wherever the data is.
"""

ATTRIBUTION = ("MITRE ATT&CK® data © The MITRE Corporation, reproduced and distributed with the "
               "permission of The MITRE Corporation (ATT&CK Terms of Use: "
               "https://attack.mitre.org/resources/legal-and-branding/terms-of-use/).")
