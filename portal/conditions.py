"""Coded conditions (SNOMED CT) the portal knows by name: groups match on them, screens show them."""

CONDITIONS: dict[str, str] = {
    "46635009": "Type 1 diabetes mellitus",
    "195967001": "Asthma",
    "84757009": "Epilepsy",
    "190905008": "Cystic fibrosis",
    "414916001": "Obesity",
}
