/*
 * nginx PORT [-g "daemon off;"]: a stand-in for nginx in the test images.
 *
 * Like nginx it runs a master process that records its PID in
 * /var/run/nginx.pid and calls itself "nginx: master process" in its command
 * line, and a worker that serves: here busybox httpd serving /www on PORT.
 * SIGTERM, SIGINT and SIGQUIT stop the worker and then the master. The title
 * must fit where the arguments were, so the image passes nginx's usual
 * `-g "daemon off;"` (otherwise ignored).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t worker;

static void forward(int sig)
{
	if (worker > 0)
		kill(worker, sig);
}

/* Rewrite the command line in place, as nginx's setproctitle does. */
static void set_title(int argc, char **argv, const char *title)
{
	char *start = argv[0];
	char *end = argv[argc - 1] + strlen(argv[argc - 1]);
	size_t room = (size_t)(end - start);

	memset(start, 0, room);
	strncpy(start, title, room);
}

int main(int argc, char **argv)
{
	const char *port = argc > 1 ? argv[1] : "80";
	char port_copy[16];
	FILE *pidfile;
	int status = 0;
	pid_t child;

	snprintf(port_copy, sizeof(port_copy), "%s", port);
	child = fork();
	if (child < 0) {
		perror("nginx: fork");
		return 1;
	}
	if (child == 0) {
		execlp("httpd", "httpd", "-f", "-p", port_copy, "-h", "/www", (char *)NULL);
		perror("nginx: exec httpd");
		_exit(127);
	}
	worker = child;
	signal(SIGTERM, forward);
	signal(SIGINT, forward);
	signal(SIGQUIT, forward);
	pidfile = fopen("/var/run/nginx.pid", "w");
	if (pidfile != NULL) {
		fprintf(pidfile, "%d\n", (int)getpid());
		fclose(pidfile);
	}
	if (argc > 1)
		set_title(argc, argv, "nginx: master process nginx");
	fprintf(stderr, "nginx: master process started, worker %d on port %s\n", (int)child,
		port_copy);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	unlink("/var/run/nginx.pid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
}
