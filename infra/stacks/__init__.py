"""Stacks compose constructs; each is planned and applied as one Terraform root."""
