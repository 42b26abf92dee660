"""What every layer shares and nothing else: errors users can act on, where files live,
running external tools. It imports no other package of this project."""
