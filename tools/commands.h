/* commands.h: the subcommands of the `rabit` driver, one file each
 * (cmd_<name>.c), and rabitc's in rabitc_<name>.c. Each takes the arguments
 * after its name and returns the exit status: 0 ok, 1 user error, 2 internal error. */
#ifndef RABIT_COMMANDS_H
#define RABIT_COMMANDS_H

int cmd_import(int argc, char **argv);   /* rabit import model.gguf -o DIR */
int cmd_quantize(int argc, char **argv); /* rabit quantize model.ir IN -o OUT [--paths k] */
int cmd_run(int argc, char **argv);      /* rabit run model.ir --weights W --prompt ... */
int cmd_ppl(int argc, char **argv);      /* rabit ppl model.ir --weights W --text FILE */
int cmd_bench(int argc, char **argv);    /* rabit bench model.ir [--random-weights] */
int cmd_data(int argc, char **argv);     /* rabit data prepare --tokenizer T --text F -o DIR */
int cmd_eval(int argc, char **argv);     /* rabit eval model.ir --weights W --data DIR */
int cmd_train(int argc, char **argv);    /* rabit train model.ir --weights W --data DIR --tokens N -o OUT */

int rabitc_tune(int argc, char **argv);  /* rabitc tune --export FILE | --import FILE | MODEL.ir */
/* rabitc tune MODEL.ir, its arguments checked (rabitc_tune_model.c): tune the
 * model's linears at batches[0..nb) within budget seconds (0: none), the SVG
 * to plot (NULL: none); twice: tune again and check the choices agree.
 * Returns the exit status. */
int rabitc_tune_model(const char *model, const int *batches, int nb, double budget, const char *plot, int twice);

#endif
