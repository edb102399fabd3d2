from echonats.cli import main

raise SystemExit(main())
