int rabit_run(void);
