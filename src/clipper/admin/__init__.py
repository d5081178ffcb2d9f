"""What users import: ClipperConnection, container managers and deployers."""
