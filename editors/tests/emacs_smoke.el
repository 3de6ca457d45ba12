;;; emacs_smoke.el --- Smoke test of alpine-lsp.el with Eglot  -*- lexical-binding: t; -*-

;; Usage: STUB_PYTHON=... STUB_LOG=... PROJECT=... \
;;   emacs -Q --batch -L <eglot and deps> -L ../emacs -l emacs_smoke.el
;; PROJECT must be a git repository with src/foo.py, src/a.cpp and a
;; .dir-locals.el setting (:alpine (:threshold 0.7 :similarity (:maxResults 5))).

;;; Code:

(require 'cl-lib)
(require 'json)
(require 'alpine-lsp)

(defvar smoke-passed 0)
(defvar smoke-failed 0)
(defconst smoke-dir (file-name-directory (or load-file-name buffer-file-name)))
(defconst smoke-project (file-name-as-directory (getenv "PROJECT")))
(defconst smoke-log (getenv "STUB_LOG"))

(setq enable-local-variables :all
      alpine-lsp-server-command
      (list (getenv "STUB_PYTHON") (expand-file-name "stub_server.py" smoke-dir)))

(defun smoke-say (format-string &rest args)
  (princ (concat (apply #'format format-string args) "\n")))

(defmacro smoke-check (name &rest body)
  (declare (indent 1))
  `(condition-case err
       (progn ,@body (cl-incf smoke-passed) (smoke-say "ok emacs: %s" ,name))
     (error (cl-incf smoke-failed) (smoke-say "FAIL emacs: %s: %S" ,name err))))

(defun smoke-wait (pred seconds)
  (let ((end (+ (float-time) seconds)))
    (while (and (not (funcall pred)) (< (float-time) end))
      (accept-process-output nil 0.05))
    (funcall pred)))

(defun smoke-entries ()
  (when (file-readable-p smoke-log)
    (with-temp-buffer
      (insert-file-contents smoke-log)
      (mapcar (lambda (line) (let ((json-object-type 'plist) (json-array-type 'list)) (json-read-from-string line)))
              (split-string (buffer-string) "\n" t)))))

(defun smoke-entries-of (kind)
  (cl-remove-if-not (lambda (e) (equal (plist-get e :kind) kind)) (smoke-entries)))

(defun smoke-start (file)
  (find-file (expand-file-name file smoke-project))
  (apply #'eglot (eglot--guess-contact))
  (smoke-wait #'eglot-current-server 30))

(smoke-check "eglot starts alpine-lsp for python-mode"
  (cl-assert (smoke-start "src/foo.py"))
  (cl-assert (cl-typep (eglot-current-server) 'alpine-lsp-server)))

(smoke-check "initializationOptions come from alpine-lsp-initialization-options"
  (let ((init (plist-get (plist-get (car (smoke-entries-of "initialize")) :data)
                         :initializationOptions)))
    (cl-assert (equal (plist-get init :severity) "warning") t)
    (cl-assert (equal (plist-get (plist-get init :similarity) :maxResults) 3) t)))

(smoke-check "workspace/configuration merges the project's :alpine section"
  (cl-assert (smoke-wait (lambda () (smoke-entries-of "configuration")) 10))
  (let ((answer (car (plist-get (car (smoke-entries-of "configuration")) :data))))
    (cl-assert (equal (plist-get answer :threshold) 0.7) t)
    (cl-assert (equal (plist-get answer :severity) "warning") t)
    (cl-assert (equal (plist-get (plist-get answer :similarity) :maxResults) 5) t)
    (cl-assert (eq (plist-get (plist-get answer :similarity) :enabled) t) t)))

(smoke-check "languageId of a python buffer"
  (cl-assert (equal (plist-get (plist-get (car (smoke-entries-of "didOpen")) :data) :languageId)
                    "python")))

(smoke-check "diagnostics reach Flymake"
  (cl-assert (smoke-wait #'flymake-diagnostics 15))
  (cl-assert (string-match-p "possible defect (p=0.87)"
                             (flymake-diagnostic-text (car (flymake-diagnostics))))))

(smoke-check "alpine-lsp-show-similar lists the locations with xref"
  (goto-char (point-min))
  (alpine-lsp-show-similar)
  (cl-assert (smoke-wait (lambda () (get-buffer "*xref*")) 5))
  (cl-assert (string-match-p "^5: def bar(y):"
                             (with-current-buffer "*xref*" (buffer-substring-no-properties (point-min) (point-max))))))

(smoke-check "alpine-lsp-show-stats shows the JSON"
  (with-current-buffer (find-buffer-visiting (expand-file-name "src/foo.py" smoke-project))
    (let ((buffer (alpine-lsp-show-stats)))
      (cl-assert (equal (with-current-buffer buffer
                          (let ((json-object-type 'plist)) (json-read-from-string (buffer-string))))
                        '(:documents 1 :stub t))))))

(smoke-check "a C++ buffer reaches a server with languageId cpp"
  (cl-assert (smoke-start "src/a.cpp"))
  (cl-assert (smoke-wait (lambda () (cl-some (lambda (e) (equal (plist-get (plist-get e :data) :languageId) "cpp"))
                                             (smoke-entries-of "didOpen")))
                         10)))

(ignore-errors (eglot-shutdown-all))
(smoke-say "emacs: %d passed, %d failed" smoke-passed smoke-failed)
(kill-emacs (if (zerop smoke-failed) 0 1))

;;; emacs_smoke.el ends here
