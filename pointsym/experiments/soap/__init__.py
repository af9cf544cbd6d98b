"""``pointsym soap``: SOAP features of structure files; the demo's SOAP stage."""
