# qconform_add_suite(): registered by later code.
