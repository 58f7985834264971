from minwa.cli import main

raise SystemExit(main())
