"""Pure helpers every layer may use; they import nothing of vigil."""
