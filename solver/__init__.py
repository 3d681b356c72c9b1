"""polycrack solver: case files, material laws and the DOLFINx chemo-mechanical fracture model."""

__version__ = "0.1.0"
