"""One construct per infrastructure layer; stacks only compose them."""
